"""Small FastAPI apps written the way people write them, each fault planted on purpose, for the
probe to find (`sync-async-lab probe examples.shop:app --out DIR`). Nothing in them knows about
the lab."""
