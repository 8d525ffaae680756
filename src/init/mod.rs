//! `labinit`, the container entrypoint: configuration, accounts, setup steps,
//! privilege drop and supervision. Everything here avoids libc's user database
//! (NSS) so that the static binary behaves the same in every image.
