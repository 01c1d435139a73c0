//! Workspace-level integration tests of HamOS.
