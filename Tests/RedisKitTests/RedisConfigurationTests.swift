import Testing

@testable import RedisKit

@Suite("Connection URLs", .timeLimit(.minutes(2)))
struct RedisConfigurationTests {
    @Test func plainHostPortAndDatabase() throws {
        let c = try RedisConfiguration(url: "redis://example.internal:6380/3")
        #expect(c.endpoint == .tcp(host: "example.internal", port: 6380))
        #expect(c.database == 3)
        #expect(c.password == nil && c.username == nil)
    }

    @Test func defaults() throws {
        let c = try RedisConfiguration(url: "redis://")
        #expect(c.endpoint == .tcp(host: "127.0.0.1", port: 6379))
        #expect(c.database == 0)
    }

    @Test func passwordAndACLUser() throws {
        let p = try RedisConfiguration(url: "redis://:s3cr%40t@h:1")
        #expect(p.username == nil && p.password == "s3cr@t")
        let u = try RedisConfiguration(url: "redis://alice:pw@h")
        #expect(u.username == "alice" && u.password == "pw")
        let bare = try RedisConfiguration(url: "redis://onlypassword@h")
        #expect(bare.username == nil && bare.password == "onlypassword")
    }

    @Test func ipv6AndUnix() throws {
        #expect(try RedisConfiguration(url: "redis://[::1]:7000").endpoint == .tcp(host: "::1", port: 7000))
        let unix = try RedisConfiguration(url: "unix:///run/redis.sock?db=2&password=x")
        #expect(unix.endpoint == .unix(path: "/run/redis.sock"))
        #expect(unix.database == 2 && unix.password == "x")
    }

    @Test(arguments: [
        "http://h", "redis://h:0", "redis://h:99999", "redis://h:port", "redis://h/db", "unix://relative",
        "redis://:%zz@h", "redis://[::1", "unix:///s?bogus=1",
    ])
    func rejected(url: String) {
        #expect {
            try RedisConfiguration(url: url)
        } throws: { error in
            (error as? RedisError)?.code == .invalidURL
        }
    }

    @Test func redactsPasswords() {
        #expect(RedisConfiguration.redacted("redis://alice:pw@h:1/0") == "redis://alice:***@h:1/0")
        #expect(RedisConfiguration.redacted("redis://pw@h") == "redis://***@h")
        #expect(RedisConfiguration.redacted("redis://h:1") == "redis://h:1")
    }

    @Test func digests() {
        #expect(Digest.sha1Hex(Array("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(
            Digest.hex(Digest.sha256(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
