"""Content types in and out of the runtime, one module each: NumPy files, JSON values, the Open
Inference Protocol's tensors, and photos. Codecs know nothing of HTTP: they turn bytes into arrays
(checked against the model before anything large is allocated) and arrays into bytes."""
