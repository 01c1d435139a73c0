//! HamOS inference-time OOD scorers.
