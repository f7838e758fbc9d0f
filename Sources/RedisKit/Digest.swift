import COpenSSL

/// Digests through OpenSSL's libcrypto.
public enum Digest {
    /// SHA-1 of `bytes`, lower-case hex.
    public static func sha1Hex(_ bytes: [UInt8]) -> String {
        hex(digest(bytes, EVP_sha1()))
    }

    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        digest(bytes, EVP_sha256())
    }

    /// Lower-case hex of `bytes`.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// HMAC-SHA-256 of `bytes` under `key`.
    public static func hmacSHA256(key: [UInt8], _ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { k in
            bytes.withUnsafeBytes { b in
                HMAC(
                    EVP_sha256(), k.baseAddress, Int32(k.count), b.bindMemory(to: UInt8.self).baseAddress, b.count,
                    &out, &length)
            }
        }
        precondition(result != nil, "OpenSSL HMAC failed")
        return Array(out.prefix(Int(length)))
    }

    private static func digest(_ bytes: [UInt8], _ type: OpaquePointer?) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let ok = bytes.withUnsafeBytes { raw in
            EVP_Digest(raw.baseAddress, raw.count, &out, &length, type, nil)
        }
        precondition(ok == 1, "OpenSSL EVP_Digest failed")
        return Array(out.prefix(Int(length)))
    }
}
