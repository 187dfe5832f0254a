import NIOCore

/// Runs Swift tasks on a NIO event loop, so a handler started from a connection runs on that
/// connection's thread: no thread hop between reading a call and running its handler, nor
/// between the handler's result and the write.
package final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    package init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
