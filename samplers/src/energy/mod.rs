//! OOD-ness energies.

pub mod knn;
