"""The ground every other package stands on: trial options and their hash, value checks, training
recipes, architecture names, storage (local or object store) and atomic writes. It imports nothing
else of layerlth."""
