"""Keras metrics a compiled model refers to (`MacroAUC`); registered for loading when `models` loads
a `.keras` file, so a checkpoint compiles in a fresh interpreter."""
