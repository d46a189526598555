import LedgerTestSupport
import Testing

/// Every test of this target that uses the shared nats-server runs inside this suite: one at a time here, and
/// (through `.natsServer`) never at the same time as such a test of another target, in the same process.
@Suite(.serialized, .natsServer, .timeLimit(.minutes(10)))
enum Integration {}
