"""Optional framework glue, imported on demand: ``groupmixformer.integrations.mmseg`` registers
the backbone ``GroupMixFormer`` in mmsegmentation's ``MODELS`` (needs the ``[mmseg]`` extra)."""
