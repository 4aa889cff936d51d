//! A pool dropped with thousands of pending tasks: no hang, every
//! JoinHandle resolves to Cancelled, and the process's descriptors and
//! threads go back to what they were. One test in this binary, so that no
//! other test's threads or descriptors come and go meanwhile.

use std::thread;
use std::time::{Duration, Instant};

use integration_tests::{park_on, with_deadline};
use runtime::{CrossWake, JoinHandle, Pool, Runtime};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// (descriptors, threads) of this process.
fn usage() -> (usize, usize) {
    (count("/proc/self/fd"), count("/proc/self/task"))
}

/// Waits (bounded) until the usage is back to `baseline`: a joined
/// thread's entry may linger in /proc for a moment after the join.
fn back_to(baseline: (usize, usize), what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = usage();
        if now == baseline {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: (descriptors, threads) {now:?}, expected {baseline:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn pending_tasks(how: CrossWake) {
    let pool = Pool::builder()
        .threads(4)
        .runtime(Runtime::builder().cross_wake(how))
        .build()
        .unwrap();
    let handle = pool.handle();
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    // Sleeping tasks, tasks with a read in flight, tasks waiting on tasks
    // of other workers: started on their workers.
    for i in 0..2000 {
        handles.push(handle.spawn_on(i % 4, || async {
            runtime::time::sleep(Duration::from_secs(3600)).await;
        }));
    }
    let readers = pool.run(|_| async {
        let (a, b) = net::UnixStream::pair().unwrap();
        let a = std::rc::Rc::new(a);
        for _ in 0..100 {
            let a = a.clone();
            runtime::spawn(async move {
                let _ = a.read(Vec::with_capacity(16)).await;
            });
        }
        runtime::yield_now().await;
        // Keep the other end open inside a task that never ends.
        runtime::spawn(async move {
            let _b = b;
            std::future::pending::<()>().await
        });
        runtime::metrics().ops_in_flight
    });
    assert!(readers.iter().all(|&n| n >= 100), "{readers:?}");
    let mut waiters = Vec::new();
    for i in 0..1000 {
        let h = handle.clone();
        waiters.push(handle.spawn_on(i % 4, move || async move {
            h.spawn_on((i + 1) % 4, std::future::pending::<()>).await
        }));
    }
    // And tasks that may still be in the workers' remote queues when the
    // pool goes.
    let late = {
        let handle = handle.clone();
        thread::spawn(move || {
            (0..2000)
                .map(|i| handle.spawn_on(i % 4, std::future::pending::<()>))
                .collect::<Vec<_>>()
        })
    };
    handles.extend(late.join().unwrap());
    drop(pool);
    for h in handles {
        assert!(park_on(h).unwrap_err().is_cancelled());
    }
    for h in waiters {
        // Cancelled itself, or woken by its target's cancellation before
        // its own worker stopped.
        match park_on(h) {
            Err(e) => assert!(e.is_cancelled()),
            Ok(inner) => assert!(inner.unwrap_err().is_cancelled()),
        }
    }
    drop(handle);
}

#[test]
fn a_dropped_pool_leaves_nothing_behind() {
    with_deadline(Duration::from_secs(120), || {
        // Warm up whatever the process sets up once (the test harness,
        // lazily opened descriptors).
        pending_tasks(CrossWake::MsgRing);
        let baseline = usage();

        pending_tasks(CrossWake::MsgRing);
        back_to(baseline, "after a MSG_RING pool with pending tasks");
        pending_tasks(CrossWake::EventFd);
        back_to(baseline, "after an eventfd pool with pending tasks");

        // A pool whose workers cannot build their ring: the error, and no
        // thread or descriptor left.
        let err = Pool::builder()
            .threads(4)
            .runtime(Runtime::builder().entries(0))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        back_to(baseline, "after a pool that failed to build");

        // A pool dropped while idle.
        drop(Pool::builder().threads(3).build().unwrap());
        back_to(baseline, "after an idle pool");
    });
}
