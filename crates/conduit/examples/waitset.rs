//! One event loop over an interval, a one-shot timer and a wake-up from
//! another thread: stops after the interval fired three times and the
//! timer fired once.
//!
//! `cargo run --example waitset`

use std::time::Duration;

use conduit::waitset::{Control, Event, WaitSet, WakeUp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Sources the WaitSet borrows are declared before it.
    let wake_up = WakeUp::new()?;
    let set = WaitSet::new()?;

    let interval = set.attach_interval(Duration::from_millis(20))?;
    let timer = set.attach_timer(Duration::from_millis(30))?;
    let woken = set.attach(&wake_up)?;

    // Another thread (or process holding the descriptor) wakes the loop.
    std::thread::scope(|scope| {
        scope.spawn(|| wake_up.wake().expect("eventfd write"));

        let (mut ticks, mut timer_fired) = (0, false);
        set.run(|event| {
            match event {
                Event::Interval { id, count } if id == interval.id() => {
                    ticks += count;
                    println!("interval: {count} period(s), {ticks} in all");
                }
                Event::Timer(id) if id == timer.id() => {
                    timer_fired = true;
                    println!("one-shot timer fired");
                }
                Event::Ready { id, .. } if id == woken.id() => {
                    println!("woken by another thread");
                }
                other => println!("other event: {other:?}"),
            }
            if ticks >= 3 && timer_fired {
                Control::Stop
            } else {
                Control::Continue
            }
        })
    })?;
    println!("done");
    Ok(())
}
