//! `async-offers`: command-line client. Not implemented yet (issue 2, item 8); it says so and
//! fails rather than pretending to work.

fn main() {
    eprintln!(
        "async-offers: the command-line client is not implemented yet; see the quickstart example"
    );
    std::process::exit(1);
}
