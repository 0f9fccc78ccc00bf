//! Two processes share a relocatable linked list in shared memory.
//!
//! The parent creates a managed segment, builds a doubly linked list of
//! waypoints in it and starts a copy of itself as a child. The child maps
//! the same segment — at a different address — walks the list (its links
//! are offsets, not pointers, so they are valid in every mapping), appends
//! a waypoint and exits. The parent then walks the list again and sees the
//! child's waypoint. Finally the segment is removed.
//!
//! ```sh
//! cargo run --release --example shared_list
//! ```

use std::error::Error;
use std::process::Command;

use conduit::ShmSafe;
use conduit::shm::{ManagedSegment, Segment, ShmList};

/// One point of a route; lives in shared memory.
#[derive(Debug, Clone, Copy, ShmSafe)]
#[repr(C)]
struct Waypoint {
    id: u32,
    _pad: u32,
    x: f64,
    y: f64,
}

fn print_route(who: &str, managed: &ManagedSegment) -> Result<(), Box<dyn Error>> {
    let mut guard = managed.lock()?;
    let route = guard
        .find::<ShmList<Waypoint>>("route")?
        .ok_or("no route in the segment")?;
    let (route, ctx) = guard.get(route)?;
    println!(
        "[{who}] segment mapped at {:p}; route has {} waypoints:",
        managed.segment().data().base(),
        route.len()
    );
    for waypoint in route.iter(ctx.view()) {
        let w = waypoint?;
        println!("[{who}]   #{} at ({:.1}, {:.1})", w.id, w.x, w.y);
    }
    Ok(())
}

fn child(domain: &str) -> Result<(), Box<dyn Error>> {
    let managed = ManagedSegment::open_with(Segment::builder("shared-list").domain(domain))?;
    print_route("child ", &managed)?;
    let mut guard = managed.lock()?;
    let route = guard
        .find::<ShmList<Waypoint>>("route")?
        .ok_or("no route")?;
    let (route, mut ctx) = guard.get(route)?;
    route.push_back(
        &mut ctx,
        Waypoint {
            id: 99,
            _pad: 0,
            x: -1.0,
            y: -1.0,
        },
    )?;
    println!("[child ] appended waypoint #99");
    Ok(())
}

/// Removes the segment's name when the parent is done, even on error.
struct RemoveOnDrop<'a>(&'a ManagedSegment);
impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.segment().unlink();
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        return child(&args[2]);
    }
    let domain = format!("example-{}", std::process::id());
    let managed = ManagedSegment::create_with(
        Segment::builder("shared-list")
            .domain(&domain)
            .size(1 << 20),
    )?;
    let _remove = RemoveOnDrop(&managed);
    {
        let mut guard = managed.lock()?;
        let route = guard.find_or_construct("route", ShmList::<Waypoint>::new)?;
        let (route, mut ctx) = guard.get(route)?;
        for id in 1..=4 {
            let f = f64::from(id);
            route.push_back(
                &mut ctx,
                Waypoint {
                    id,
                    _pad: 0,
                    x: f * 1.5,
                    y: f * f,
                },
            )?;
        }
    }
    print_route("parent", &managed)?;
    let status = Command::new(std::env::current_exe()?)
        .args(["child", &domain])
        .status()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    print_route("parent", &managed)?;
    println!("[parent] the child's waypoint arrived through offsets; removing the segment");
    Ok(())
}
