"""Data: video decoding, SynthVAD, real dataset formats, instruction data and pipelines."""
