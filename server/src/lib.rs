//! The parts of the `kms-envelope` gateway that are pure functions of their
//! input: the JSON request bodies and their checks. They live in a library so
//! the fuzz targets (`fuzz/`) exercise exactly the code the server runs.

pub mod api;
