"""SK-VG annotations (``annotations``), the synthetic scene generator (``synthetic``) and the
PyTorch datasets (``datasets``); import the submodules directly."""
