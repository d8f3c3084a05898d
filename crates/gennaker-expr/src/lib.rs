//! Gennaker's pipeline expression language (`${ … }`), a sandboxed subset of SpEL.
