//! The HamOS pipeline and the hamos command-line tool.
