//! The paper's Amazon-sized data for the benches: the `amz` synthetic preset (94K users × 39K
//! items × 1.08M interactions after 5-core), written to a temporary folder and prepared.

use agp_datasets::synth::{SynthSpec, write_recbole};
use agp_datasets::{Dataset, DatasetSource, PrepareOptions};

pub fn amz() -> Dataset {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let spec = SynthSpec::preset("amz").expect("known preset");
    let dir = tmp.path().join(&spec.name);
    write_recbole(&spec, &dir).expect("synthetic data written");
    let source =
        DatasetSource::parse(&format!("recbole:{}", dir.display()), None).expect("recbole source");
    agp_datasets::prepare(&source, &PrepareOptions::default()).expect("synthetic data loads")
}
