"""Old name of `cof_tool_sft` (the registered name is `cof-tool-sft`)."""

from .cof_tool_sft import CofToolSettings  # noqa: F401  # re-export for tests/data/builders/test_hoi_spatial.py, removed at merge
