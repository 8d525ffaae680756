fn main() {
    println!("labinit {}", env!("CARGO_PKG_VERSION"));
}
