//! HamOS losses: CIDER, SupCon, SimCLR and the OOD-discernment loss.
