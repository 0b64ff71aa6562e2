//! The agents behind the example binaries, as a library so the test suite can pin their
//! tool schemas.

pub mod customer_service;
pub mod product_specialist;
