//! `cargo xtask train <model> ...`

mod lightgcn;
pub mod sasrec;

#[derive(clap::Subcommand)]
pub enum TrainCmd {
    /// LightGCN (He et al., SIGIR'20), as in the official PyTorch code.
    Lightgcn(lightgcn::Args),
    /// SASRec (Kang & McAuley, ICDM'18), as in the original TF code and pmixer's port.
    Sasrec(sasrec::Args),
}

pub fn run(cmd: TrainCmd) -> anyhow::Result<()> {
    match cmd {
        TrainCmd::Lightgcn(a) => lightgcn::run(a),
        TrainCmd::Sasrec(a) => sasrec::run(a),
    }
}
