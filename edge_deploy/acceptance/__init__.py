"""Acceptance: the built image, run as a device would run it, must answer real photos as PyTorch does.

- `photos`: the gate's photos (the model directory's own `photos/`, else real photos that ship
  with matplotlib, which the OpenMMLab stack installs);
- `reference`: the OpenMMLab codebase's own inference API on the PyTorch model, per photo, written
  by the validation gate beside its report (`photo-reference/`);
- `compare`: a device's `/v1/predict` answer against that reference, with the task's tolerances;
- `device`: an image started as a device (no network, the key mounted as a file, the image's own
  user) and asked about each photo through its own endpoints;
- `accept`: the verdict per target, which decides whether an image may be labelled and released.

Only `reference` needs torch and the OpenMMLab packages (it runs in the conversion environment);
the rest runs where images are built.
"""
