"""Files, without torch: atomic writes, strict safetensors, model files and checkpoint folders.

* :mod:`.files`: atomic writes and ``fsync`` of folders;
* :mod:`.safetensors`: the safetensors format, read strictly with bounded memory;
* :mod:`.architecture`: the architecture registry (model configurations as JSON, checked,
  with the tensors each one declares);
* :mod:`.model_file`: the one model file format, read by ``load_model`` (torch) and by
  ``inference.load`` (NumPy, CuPy);
* :mod:`.checkpoint`: checkpoint folders and the crash-safe scheme that replaces them.

Files from outside are hostile until checked: nothing is unpickled, every error is a
:class:`~.files.CheckpointError` that says what is wrong, and memory stays bounded by the
size of the file.
"""
