/// The OpenAPI 3.1 document of the API, served at `/run/api/openapi.json`.
enum OpenAPIDocument {
    static let json = "{}"
}
