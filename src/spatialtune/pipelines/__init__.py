"""End-to-end pipelines built from the components and recipes: the quickstart and the installation smoke check."""
