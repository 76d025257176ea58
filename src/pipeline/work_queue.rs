//! The queue from the callers' threads to the recorder thread (see docs/design/work-queue.md).
//!
//! std's mpsc channel allocates, zeroed, a block of 31 message slots on the sending thread every 31
//! messages (freed on the receiving one) and moves each message in and out of it. Here a sender
//! appends to a `VecDeque` under a lock and the receiver swaps the whole queue for its own emptied
//! one, so once both have grown to the usual burst neither allocates.
//!
//! Like the channel, it wakes the receiver only when it is waiting (the queue was empty), keeps
//! the order of messages, and hands the receiver what was sent before the queue closed.

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};

/// A receiver's emptied queue keeps at most this many slots: a rare large burst does not hold
/// its memory for the life of the process.
const KEPT_CAPACITY: usize = 1024;

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    arrived: Condvar,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Default for WorkQueue<T> {
    fn default() -> Self {
        WorkQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            arrived: Condvar::new(),
        }
    }
}

impl<T> WorkQueue<T> {
    /// Appends `item`; gives it back when the queue is closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(item);
        }
        state.items.push_back(item);
        // The receiver waits only for an empty queue.
        let was_empty = state.items.len() == 1;
        drop(state);
        if was_empty {
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// Swaps everything queued into `into`, which must be empty, waiting for something first when
    /// `wait`. False once the queue is closed and nothing is left.
    pub fn take_all(&self, into: &mut VecDeque<T>, wait: bool) -> bool {
        debug_assert!(into.is_empty());
        if into.capacity() > KEPT_CAPACITY {
            into.shrink_to(KEPT_CAPACITY);
        }
        let mut state = self.state.lock();
        while wait && state.items.is_empty() && !state.closed {
            self.arrived.wait(&mut state);
        }
        std::mem::swap(&mut state.items, into);
        !(state.closed && into.is_empty())
    }

    /// Refuses further items and wakes a waiting receiver, which still takes what is queued.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.arrived.notify_all();
    }

    /// Closes the queue and returns what is left in it (a receiver that stops).
    pub fn close_and_take(&self) -> VecDeque<T> {
        let mut state = self.state.lock();
        state.closed = true;
        std::mem::take(&mut state.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn keeps_order_and_wakes_a_waiting_receiver() {
        let queue = Arc::new(WorkQueue::default());
        let sender = queue.clone();
        let sending = thread::spawn(move || {
            for i in 0..10_000 {
                sender.push(i).unwrap();
            }
            sender.close();
        });
        let mut received = Vec::new();
        let mut batch = VecDeque::new();
        while queue.take_all(&mut batch, true) {
            received.extend(batch.drain(..));
        }
        sending.join().unwrap();
        assert_eq!(received, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_closed_queue_refuses_items_and_gives_back_what_is_left() {
        let queue = WorkQueue::default();
        queue.push(1).unwrap();
        queue.close();
        assert_eq!(queue.push(2), Err(2));
        let mut batch = VecDeque::new();
        assert!(queue.take_all(&mut batch, true));
        assert_eq!(batch, [1]);
        batch.clear();
        assert!(!queue.take_all(&mut batch, true));

        let stopped = WorkQueue::default();
        stopped.push(3).unwrap();
        assert_eq!(stopped.close_and_take(), [3]);
        assert_eq!(stopped.push(4), Err(4));
    }
}
