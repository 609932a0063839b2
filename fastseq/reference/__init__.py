"""Plain NumPy twin of fastseq: slow, per-step code written from the equations."""
