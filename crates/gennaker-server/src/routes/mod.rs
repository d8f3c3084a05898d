//! The API's routes.

pub(crate) mod access;
pub(crate) mod applications;
mod documents;
pub(crate) mod health;
pub(crate) mod pipelines;
