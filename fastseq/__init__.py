"""fastseq: the seq2seq layers and models of 'Deep Learning from Scratch 2', compiled with Numba."""
