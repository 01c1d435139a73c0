//! ID barriers (Eqn 5).

pub mod none;
mod screen;
pub mod vmf_kde;
