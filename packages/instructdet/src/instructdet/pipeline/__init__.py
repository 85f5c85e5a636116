"""The InDET pipeline stages (paper Sec. 3) and their runner (``runner``); import the submodules
directly."""
