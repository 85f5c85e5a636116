from papers_shared.testing import block_network  # noqa: F401
