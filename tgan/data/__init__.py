"""MIDI <-> events, augmentation, data sets and their cache. Never imports the model."""
