//! Authentication: password hashing, session tokens and their revocation, and the
//! [`AuthUser`] extractor that keeps auth out of REST handler bodies.

mod extractor;
mod hs256;
mod jwt;
mod password;

pub use extractor::{session_cookie, signed_in, AuthUser, COOKIE_NAME};
pub use jwt::{Claims, Sessions};
pub use password::{hash_password, verify_password};
