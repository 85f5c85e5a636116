from papers_shared.testing import block_network  # noqa: F401  (autouse: no network in tests)
