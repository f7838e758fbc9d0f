import Testing
import TetherCore

@Suite("Open-file limit")
struct OpenFileLimitTests {
    /// The soft limit is lowered by one (tests run in parallel in this process: not far enough to starve them), then
    /// raised back to the hard limit as a process does at startup.
    @Test func aLoweredSoftLimitIsRaisedToTheHardLimit() throws {
        let (_, hard) = try #require(OpenFileLimit.current)
        try #require(hard > 1_024 && hard < UInt64(Int32.max), "the hard limit (\(hard)) leaves room to lower")
        #expect(OpenFileLimit.setSoftLimit(hard - 1))
        #expect(OpenFileLimit.current?.soft == hard - 1)
        let raised = OpenFileLimit.raiseToHardLimit()
        #expect(raised.before == hard - 1)
        #expect(raised.after == hard)
        #expect(OpenFileLimit.current?.soft == hard)
        // At the hard limit already: nothing to do.
        #expect(OpenFileLimit.raiseToHardLimit() == (hard, hard))
    }
}
