//! Runtime-agnostic crates on this runtime, as a new user writes them:
//! tokio's `sync` module (mpsc, oneshot, broadcast, `Mutex`, `Semaphore`,
//! `Notify`) and `select!`, the futures crate's combinators, and the
//! `async-channel` crate, with no tokio runtime anywhere.

use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use integration_tests::on_runtime;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn tokio_sync_primitives_work_without_tokios_runtime() {
    on_runtime(LIMIT, || async {
        // mpsc between tasks, and from another thread.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(8);
        let remote = tx.clone();
        let thread = std::thread::spawn(move || {
            for i in 0..100 {
                remote.blocking_send(1000 + i).unwrap();
            }
        });
        runtime::spawn(async move {
            for i in 0..100 {
                tx.send(i).await.unwrap();
            }
        });
        let mut got = Vec::new();
        while let Some(v) = rx.recv().await {
            got.push(v);
        }
        thread.join().unwrap();
        got.sort_unstable();
        let want: Vec<u32> = (0..100).chain(1000..1100).collect();
        assert_eq!(got, want);

        // oneshot and broadcast.
        let (otx, orx) = tokio::sync::oneshot::channel();
        runtime::spawn(async move { otx.send("done").unwrap() });
        assert_eq!(orx.await.unwrap(), "done");
        let (btx, mut b1) = tokio::sync::broadcast::channel(16);
        let mut b2 = btx.subscribe();
        btx.send(5).unwrap();
        assert_eq!((b1.recv().await.unwrap(), b2.recv().await.unwrap()), (5, 5));

        // A semaphore bounding concurrent tasks, a mutex, a notify.
        let sem = Rc::new(tokio::sync::Semaphore::new(3));
        let busy = Rc::new(std::cell::Cell::new(0));
        let peak = Rc::new(std::cell::Cell::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (sem, busy, peak) = (sem.clone(), busy.clone(), peak.clone());
            tasks.push(runtime::spawn(async move {
                let _permit = sem.acquire().await.unwrap();
                busy.set(busy.get() + 1);
                peak.set(peak.get().max(busy.get()));
                runtime::time::sleep(Duration::from_millis(1)).await;
                busy.set(busy.get() - 1);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.get(), 3);
        let m = Rc::new(tokio::sync::Mutex::new(0));
        let m2 = m.clone();
        let notify = Rc::new(tokio::sync::Notify::new());
        let n2 = notify.clone();
        let waiter = runtime::spawn(async move {
            n2.notified().await;
            *m2.lock().await += 1;
        });
        runtime::yield_now().await;
        notify.notify_one();
        waiter.await.unwrap();
        assert_eq!(*m.lock().await, 1);
    });
}

#[test]
fn select_between_a_channel_and_a_timer() {
    on_runtime(LIMIT, || async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&str>();
        // tokio's select!: the timer wins while nothing is sent.
        let outcome = tokio::select! {
            v = rx.recv() => v,
            _ = runtime::time::sleep(Duration::from_millis(5)) => None,
        };
        assert_eq!(outcome, None);
        tx.send("hello").unwrap();
        let outcome = tokio::select! {
            v = rx.recv() => v,
            _ = runtime::time::sleep(Duration::from_secs(10)) => None,
        };
        assert_eq!(outcome, Some("hello"));
        // futures' select over the same.
        let winner = {
            let recv = Box::pin(rx.recv());
            let sleep = Box::pin(runtime::time::sleep(Duration::from_millis(5)));
            match select(recv, sleep).await {
                Either::Left(_) => "recv",
                Either::Right(((), _)) => "sleep",
            }
        };
        assert_eq!(winner, "sleep", "nothing was sent");
        drop(tx);
    });
}

/// async-channel (an MPMC channel of no runtime): several consumer tasks
/// share one receiver, producers are tasks and a plain thread; every value
/// arrives exactly once, and closing ends every consumer.
#[test]
fn async_channel_between_tasks_and_threads() {
    on_runtime(LIMIT, || async {
        let (tx, rx) = async_channel::bounded::<u32>(4);
        let thread_tx = tx.clone();
        let thread = std::thread::spawn(move || {
            for i in 0..500 {
                thread_tx.send_blocking(10_000 + i).unwrap();
            }
        });
        let producer = runtime::spawn(async move {
            for i in 0..500 {
                tx.send(i).await.unwrap();
            }
        });
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                runtime::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(v) = rx.recv().await {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        drop(rx);
        producer.await.unwrap();
        // The channel closes when the thread's sender goes too.
        runtime::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        let mut all = Vec::new();
        for c in consumers {
            all.extend(c.await.unwrap());
        }
        all.sort_unstable();
        let want: Vec<u32> = (0..500).chain(10_000..10_500).collect();
        assert_eq!(all, want);
    });
}
