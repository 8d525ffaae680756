//! The image-family generator behind the `labkit` CLI: manifest, templates,
//! render, check, plan, bake and build. Owns everything under `images/`; knows
//! nothing about how labinit works beyond copying its binary into contexts.
