use std::time::Instant;
fn main() {
    let pid = std::process::id() as i32;
    let t = Instant::now();
    let sources = berth::reconcile::Sources::of_this_system();
    let a = t.elapsed().as_micros();
    let t = Instant::now();
    let user = berth::reconcile::process::identity(5001, 5001);
    let b = t.elapsed().as_micros();
    let t = Instant::now();
    let f = berth::reconcile::facts::gather(&sources, pid, user.clone()).unwrap();
    let c = t.elapsed().as_micros();
    let t = Instant::now();
    let _ = berth::reconcile::facts::gather(&sources, pid, user).unwrap();
    let d = t.elapsed().as_micros();
    let t = Instant::now();
    let _ = berth::cgroup::Mounts::of_this_system();
    let e = t.elapsed().as_micros();
    println!("sources {a} us, identity {b} us, gather {c} us, gather again {d} us, mounts again {e} us, unconstrained {}", f.unconstrained());
}
