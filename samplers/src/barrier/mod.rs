//! ID barriers (Eqn 5).

pub mod none;
pub mod vmf_kde;
