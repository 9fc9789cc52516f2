//! A LightGCN training step at the paper's Amazon size beside the memory traffic it cannot
//! avoid: how far the step is from the bandwidth bound of this machine.
//!
//! ```bash
//! RAYON_NUM_THREADS=1 cargo bench -p agp-recommenders --bench lightgcn_amz
//! ```
//!
//! Builds the `amz` synthetic preset (94K users × 39K items × 1.08M interactions after 5-core),
//! times `STEPS` minibatch steps (B = 2048, d = 64, K = 3) and their parts, measures the
//! machine's streaming bandwidth out of DRAM and out of the last-level cache with one thread,
//! and prints the bytes a step must move under a traffic model written out below. Not a
//! criterion bench: one figure per part, printed with the model so the ratio can be read off.

#[path = "common/amz.rs"]
mod amz;
use agp_recommenders::lightgcn::{LightGcnConfig, NormAdj, Trainer, normal_init, sample_epoch};
use amz::amz;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Instant;

const STEPS: usize = 20;

/// Best of `reps` runs of `f`, in seconds: the figure least disturbed by other load.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Bytes per second of `dst[i] = a · src[i] + dst[i]` over `bytes`-sized arrays (read two,
/// write one), one thread.
fn triad_bandwidth(bytes: usize) -> f64 {
    let n = bytes / 4;
    let src = vec![1.0f32; n];
    let mut dst = vec![2.0f32; n];
    let reps = (2_000_000_000 / bytes).clamp(3, 200);
    let s = best_of(reps, || {
        for (d, s) in dst.iter_mut().zip(&src) {
            *d += 0.5 * s;
        }
        black_box(&mut dst);
    });
    3.0 * bytes as f64 / s
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let t = Instant::now();
    let ds = amz();
    let config = LightGcnConfig::default();
    let adj = NormAdj::from_dataset(&ds);
    let (n, nnz, d, k) = (adj.n_nodes(), adj.nnz(), config.dim, config.layers);
    eprintln!(
        "amz: {} users, {} items, {} training pairs, {n} nodes, {nnz} non-zeros (built in {:.1} s)",
        ds.n_users(),
        ds.n_items(),
        adj.n_train_pairs(),
        t.elapsed().as_secs_f64()
    );

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let ego = normal_init(&mut rng, n * d, config.init_std);
    let mut trainer = Trainer::new(&adj, config.clone(), ego);
    let samples = sample_epoch(&adj, &mut rng);
    let batches: Vec<_> = samples.chunks(config.batch_size).take(STEPS + 2).collect();
    for b in &batches[..2] {
        trainer.step(b);
    }
    // Restricted and full propagation interleaved batch by batch, so load that comes and goes
    // falls on both alike.
    let mut full = Trainer::new(&adj, config.clone(), trainer.ego.clone());
    full.full_propagation = true;
    let (mut step, mut step_full) = (0.0, 0.0);
    for b in &batches[2..] {
        let t = Instant::now();
        black_box(trainer.step(b));
        step += t.elapsed().as_secs_f64();
        let t = Instant::now();
        black_box(full.step(b));
        step_full += t.elapsed().as_secs_f64();
    }
    let step = step / (batches.len() - 2) as f64;
    let step_full = step_full / (batches.len() - 2) as f64;
    let t = Instant::now();
    for b in &batches[2..] {
        black_box(trainer.loss_and_grad(b));
    }
    let forward_backward = t.elapsed().as_secs_f64() / (batches.len() - 2) as f64;

    // How much of the graph one step's restricted propagations still cover, and how many rows
    // the step gathers (for K = 3): layer 1 in full, layer 2 on the neighbourhood, layer 3 on
    // the batch rows; backward, Â G on the neighbourhood from batch rows only, Â H₁ from the
    // neighbourhood only, Â H₂ in full.
    let nu = ds.n_users() as u32;
    let mut near = vec![false; n];
    let mut in_batch = vec![false; n];
    let (mut covered, mut gathers) = (0.0, 0.0);
    for b in &batches[2..] {
        let rows: Vec<u32> = b
            .iter()
            .flat_map(|&(u, p, q)| [u, nu + p, nu + q])
            .collect();
        adj.mark_neighbourhood(&rows, &mut near);
        in_batch.fill(false);
        for &r in &rows {
            in_batch[r as usize] = true;
        }
        let deg = |r: usize| adj.neighbours(r).len();
        let into = |r: usize, live: &[bool]| {
            adj.neighbours(r)
                .iter()
                .filter(|&&c| live[c as usize])
                .count()
        };
        let near_rows = || (0..n).filter(|&r| near[r]);
        covered += near_rows().count() as f64 / n as f64;
        let batch_deg: usize = (0..n).filter(|&r| in_batch[r]).map(deg).sum();
        gathers += (nnz
            + near_rows().map(deg).sum::<usize>()
            + batch_deg
            + near_rows().map(|r| into(r, &in_batch)).sum::<usize>()
            + (0..n).map(|r| into(r, &near)).sum::<usize>()
            + nnz) as f64;
    }
    let covered = covered / (batches.len() - 2) as f64;
    let gathers = gathers / (batches.len() - 2) as f64;

    let x: Vec<f32> = trainer.ego.clone();
    let mut out = vec![0f32; n * d];
    let spmm = best_of(5, || adj.spmm(&x, d, &mut out));
    let spmm_add = best_of(5, || adj.spmm_add(&x, &x, d, &mut out));

    let table = n * d * 4;
    let dram = triad_bandwidth(512 << 20);
    let llc = triad_bandwidth(table);

    // Traffic model of one step (bytes), the least any implementation of the official step
    // moves: the forward's K − 1 full SpMMs and the backward's K Horner SpMMs each read the CSR
    // arrays (column u32 + value f32 per non-zero, one u32 row pointer per row), gather one
    // d-float row per non-zero, and write the output table (the Horner step also reads G); a
    // dense Adam step over the table reads parameter, gradient and both moments and writes
    // three of them back; resetting G and the L2 term are small beside these.
    let csr = nnz * 8 + n * 4;
    let gathered = nnz * d * 4;
    let spmm_bytes = csr + gathered + table;
    let spmm_add_bytes = spmm_bytes + table;
    let adam_bytes = 7 * table;
    let step_gathered = (2 * k - 1) * gathered;
    let step_streamed = (2 * k - 1) * (csr + table) + k * table + adam_bytes;

    let mb = |b: usize| b as f64 / 1e6;
    let ms = |s: f64| s * 1e3;
    println!(
        "threads: {} (RAYON_NUM_THREADS)",
        rayon::current_num_threads()
    );
    println!(
        "bandwidth, 1 thread, triad: DRAM {:.1} GB/s (512 MiB arrays), last-level cache {:.1} GB/s ({:.0} MB arrays)",
        dram / 1e9,
        llc / 1e9,
        mb(table)
    );
    println!(
        "embedding table {:.1} MB; per SpMM: CSR {:.1} MB, gathered rows {:.1} MB, output {:.1} MB",
        mb(table),
        mb(csr),
        mb(gathered),
        mb(table)
    );
    println!(
        "SpMM        {:>8.1} ms measured; {:>6.1} ms if its {:.0} MB came at DRAM speed, {:>6.1} ms at cache speed",
        ms(spmm),
        ms(spmm_bytes as f64 / dram),
        mb(spmm_bytes),
        ms(spmm_bytes as f64 / llc)
    );
    println!(
        "SpMM + add  {:>8.1} ms measured; {:>6.1} ms at DRAM speed ({:.0} MB)",
        ms(spmm_add),
        ms(spmm_add_bytes as f64 / dram),
        mb(spmm_add_bytes)
    );
    let bound_dram = (step_gathered + step_streamed) as f64 / dram;
    let bound_mixed = step_gathered as f64 / llc + step_streamed as f64 / dram;
    println!(
        "step        {:>8.1} ms measured (mean of {STEPS}); moves ≥ {:.0} MB ({:.0} MB gathered rows, {:.0} MB streamed)",
        ms(step),
        mb(step_gathered + step_streamed),
        mb(step_gathered),
        mb(step_streamed)
    );
    println!(
        "            {:>8.1} ms with every row propagated (the official code's work)",
        ms(step_full)
    );
    println!(
        "            {:>8.1} ms of it loss and gradient (forward and backward), {:.1} ms the Adam update",
        ms(forward_backward),
        ms(step - forward_backward)
    );
    println!(
        "            a batch's rows and their neighbours are {:.0}% of the nodes (the share of the last full layer and of the first backward product computed)",
        100.0 * covered
    );
    println!(
        "bound       {:>8.1} ms if all of it came from DRAM, {:.1} ms with the gathers served by the cache (the table fits in it)",
        ms(bound_dram),
        ms(bound_mixed)
    );
    println!(
        "measured / bound: {:.2}x (all DRAM), {:.2}x (gathers from cache)",
        step / bound_dram,
        step / bound_mixed
    );
    // What this implementation gathers: the restricted step skips rows it proves zero.
    let ours_gathered = gathers * (d * 4) as f64;
    let ours_dram = (ours_gathered + step_streamed as f64) / dram;
    let ours_mixed = ours_gathered / llc + step_streamed as f64 / dram;
    println!(
        "this step gathers {:.0} MB ({:.0}% of the official step's); bound {:.1} ms all DRAM, {:.1} ms gathers from cache; measured / bound {:.2}x, {:.2}x",
        mb(ours_gathered as usize),
        100.0 * ours_gathered / step_gathered as f64,
        ms(ours_dram),
        ms(ours_mixed),
        step / ours_dram,
        step / ours_mixed
    );
    let steps_per_epoch = adj.n_train_pairs().div_ceil(config.batch_size);
    println!(
        "epoch ≈ {steps_per_epoch} steps × {:.1} ms = {:.0} s (sampling not included)",
        ms(step),
        step * steps_per_epoch as f64
    );
}
