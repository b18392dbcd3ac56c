use coop_container::checkconfig;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<u8> {
    let checks = checkconfig::run();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print!("{}", checkconfig::render(&checks));
    }
    Ok(if checks.iter().any(|c| c.required && !c.ok) {
        1
    } else {
        0
    })
}
