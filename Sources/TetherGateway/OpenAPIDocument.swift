/// The OpenAPI 3.1 document of the API, served at `/run/api/openapi.json` (a copy is docs/openapi.json; a test
/// checks they match).
enum OpenAPIDocument {
    static let json = #"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "Tether durable agent execution API",
            "version": "1.0.0",
            "description": "Create an execution and stream it, read its status, approve or deny a tool call, and reconnect to its stream. Every error body is {\"error\", \"code\"}."
          },
          "servers": [
            {
              "url": "/"
            }
          ],
          "security": [
            {
              "bearer": []
            }
          ],
          "paths": {
            "/run/api/executions": {
              "post": {
                "operationId": "createExecution",
                "summary": "Create an execution and stream its events until it ends",
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/CreateExecution"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "The execution's events from the first to the final frame.",
                    "headers": {
                      "x-workflow-run-id": {
                        "schema": {
                          "type": "string"
                        },
                        "description": "The execution id."
                      },
                      "Location": {
                        "schema": {
                          "type": "string"
                        },
                        "description": "/run/api/executions/{executionId}"
                      },
                      "Idempotent-Replayed": {
                        "schema": {
                          "type": "string",
                          "const": "true"
                        },
                        "description": "Present when the Idempotency-Key named an existing execution."
                      }
                    },
                    "content": {
                      "text/event-stream": {
                        "schema": {
                          "type": "string"
                        },
                        "description": "SSE frames: `id: <stream entry id>` and `data: <chat.completion.chunk JSON>`; heartbeats are `: ping` comments; see docs/protocol.md."
                      }
                    }
                  },
                  "400": {
                    "description": "Invalid body or header (codes invalid_json, invalid_request, invalid_messages, invalid_conversation_id, invalid_forwarded_headers, invalid_idempotency_key).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "413": {
                    "description": "Body larger than the limit (code payload_too_large).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "415": {
                    "$ref": "#/components/responses/UnsupportedMediaType"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  }
                },
                "parameters": [
                  {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "schema": {
                      "type": "string",
                      "minLength": 1,
                      "maxLength": 255,
                      "pattern": "^[\\x21-\\x7E]+$"
                    },
                    "description": "Repeating a POST with the same key (same tenant and agent, within 24 h) creates nothing and streams the execution the first one created, from its start, with Idempotent-Replayed: true."
                  }
                ]
              }
            },
            "/run/api/executions/{executionId}": {
              "get": {
                "operationId": "getExecution",
                "summary": "The execution's status",
                "parameters": [
                  {
                    "name": "executionId",
                    "in": "path",
                    "required": true,
                    "schema": {
                      "type": "string",
                      "pattern": "^exec_[0-9A-Z]{26}$"
                    }
                  }
                ],
                "responses": {
                  "200": {
                    "description": "Status.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Execution"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "404": {
                    "$ref": "#/components/responses/ExecutionNotFound"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  }
                }
              }
            },
            "/run/api/executions/{executionId}/approvals/{toolCallId}": {
              "post": {
                "operationId": "decideToolCall",
                "summary": "Approve or deny a tool call that waits for approval",
                "parameters": [
                  {
                    "name": "executionId",
                    "in": "path",
                    "required": true,
                    "schema": {
                      "type": "string",
                      "pattern": "^exec_[0-9A-Z]{26}$"
                    }
                  },
                  {
                    "name": "toolCallId",
                    "in": "path",
                    "required": true,
                    "schema": {
                      "type": "string"
                    }
                  }
                ],
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/Decision"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "Recorded, or the same decision repeated.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Success"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "Invalid body (codes invalid_json, invalid_request).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "404": {
                    "description": "No such execution (execution_not_found) or no approval requested for that tool call (tool_call_not_found).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "The opposite decision was recorded (decision_conflict), or the execution has finished (execution_finished).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "415": {
                    "$ref": "#/components/responses/UnsupportedMediaType"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  }
                }
              }
            },
            "/run/api/executions/{executionId}/stream": {
              "get": {
                "operationId": "streamExecution",
                "summary": "Reconnect: the events after Last-Event-ID (or lastEventId, or x-stream-start-index frames), else from the start",
                "parameters": [
                  {
                    "name": "executionId",
                    "in": "path",
                    "required": true,
                    "schema": {
                      "type": "string",
                      "pattern": "^exec_[0-9A-Z]{26}$"
                    }
                  },
                  {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "schema": {
                      "type": "string",
                      "pattern": "^[0-9]+-[0-9]+$"
                    }
                  },
                  {
                    "name": "lastEventId",
                    "in": "query",
                    "schema": {
                      "type": "string",
                      "pattern": "^[0-9]+-[0-9]+$"
                    }
                  },
                  {
                    "name": "x-stream-start-index",
                    "in": "header",
                    "schema": {
                      "type": "integer",
                      "minimum": 0
                    },
                    "description": "Number of frames to skip (Inkeep)."
                  }
                ],
                "responses": {
                  "200": {
                    "description": "The events after the cursor until the final frame; a gap frame first when the history after the cursor was trimmed.",
                    "headers": {
                      "x-workflow-run-id": {
                        "schema": {
                          "type": "string"
                        },
                        "description": "The execution id."
                      }
                    },
                    "content": {
                      "text/event-stream": {
                        "schema": {
                          "type": "string"
                        },
                        "description": "SSE frames: `id: <stream entry id>` and `data: <chat.completion.chunk JSON>`; heartbeats are `: ping` comments; see docs/protocol.md."
                      }
                    }
                  },
                  "204": {
                    "description": "The client already has the final frame: stop reconnecting."
                  },
                  "400": {
                    "description": "Malformed cursor (codes invalid_last_event_id, invalid_stream_start_index).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "401": {
                    "$ref": "#/components/responses/Unauthorized"
                  },
                  "404": {
                    "$ref": "#/components/responses/ExecutionNotFound"
                  },
                  "503": {
                    "$ref": "#/components/responses/Unavailable"
                  }
                }
              }
            },
            "/healthz": {
              "get": {
                "operationId": "health",
                "security": [],
                "responses": {
                  "200": {
                    "description": "The process is up."
                  }
                }
              }
            },
            "/readyz": {
              "get": {
                "operationId": "ready",
                "security": [],
                "responses": {
                  "200": {
                    "description": "Redis answers."
                  },
                  "503": {
                    "description": "Redis is not reachable (code unavailable).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            }
          },
          "components": {
            "securitySchemes": {
              "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "API key tk_<id>_<secret>."
              }
            },
            "responses": {
              "ExecutionNotFound": {
                "content": {
                  "application/json": {
                    "schema": {
                      "$ref": "#/components/schemas/Error"
                    }
                  }
                },
                "description": "No such execution for this key's tenant and agent (code execution_not_found)."
              },
              "Unauthorized": {
                "description": "Missing, malformed, unknown or revoked key (code unauthorized); WWW-Authenticate: Bearer.",
                "headers": {
                  "WWW-Authenticate": {
                    "schema": {
                      "type": "string"
                    }
                  }
                },
                "content": {
                  "application/json": {
                    "schema": {
                      "$ref": "#/components/schemas/Error"
                    }
                  }
                }
              },
              "Unavailable": {
                "content": {
                  "application/json": {
                    "schema": {
                      "$ref": "#/components/schemas/Error"
                    }
                  }
                },
                "description": "Redis unavailable (code unavailable)."
              },
              "UnsupportedMediaType": {
                "content": {
                  "application/json": {
                    "schema": {
                      "$ref": "#/components/schemas/Error"
                    }
                  }
                },
                "description": "Content-Type is not application/json (code unsupported_media_type)."
              }
            },
            "schemas": {
              "Error": {
                "type": "object",
                "required": [
                  "error",
                  "code"
                ],
                "properties": {
                  "error": {
                    "type": "string"
                  },
                  "code": {
                    "type": "string"
                  }
                }
              },
              "Success": {
                "type": "object",
                "required": [
                  "success"
                ],
                "properties": {
                  "success": {
                    "const": true
                  }
                }
              },
              "ContentPart": {
                "oneOf": [
                  {
                    "type": "object",
                    "required": [
                      "type",
                      "text"
                    ],
                    "properties": {
                      "type": {
                        "const": "text"
                      },
                      "text": {
                        "type": "string"
                      }
                    }
                  },
                  {
                    "type": "object",
                    "required": [
                      "type",
                      "image_url"
                    ],
                    "properties": {
                      "type": {
                        "const": "image_url"
                      },
                      "image_url": {
                        "type": "object",
                        "required": [
                          "url"
                        ],
                        "properties": {
                          "url": {
                            "type": "string"
                          }
                        }
                      }
                    }
                  }
                ]
              },
              "Message": {
                "type": "object",
                "required": [
                  "role",
                  "content"
                ],
                "properties": {
                  "role": {
                    "enum": [
                      "system",
                      "user",
                      "assistant",
                      "tool",
                      "function"
                    ]
                  },
                  "content": {
                    "oneOf": [
                      {
                        "type": "string"
                      },
                      {
                        "type": "array",
                        "items": {
                          "$ref": "#/components/schemas/ContentPart"
                        }
                      }
                    ]
                  }
                }
              },
              "CreateExecution": {
                "type": "object",
                "required": [
                  "messages"
                ],
                "properties": {
                  "messages": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                      "$ref": "#/components/schemas/Message"
                    }
                  },
                  "conversationId": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9._:-]{1,256}$"
                  },
                  "forwardedHeaders": {
                    "type": "object",
                    "additionalProperties": {
                      "type": "string"
                    },
                    "maxProperties": 64
                  }
                }
              },
              "Decision": {
                "type": "object",
                "required": [
                  "approved"
                ],
                "properties": {
                  "approved": {
                    "type": "boolean"
                  },
                  "reason": {
                    "type": "string",
                    "maxLength": 4096
                  }
                }
              },
              "PendingApproval": {
                "type": "object",
                "required": [
                  "toolCallId",
                  "toolName",
                  "input",
                  "requestedAt"
                ],
                "properties": {
                  "toolCallId": {
                    "type": "string"
                  },
                  "toolName": {
                    "type": "string"
                  },
                  "input": {},
                  "requestedAt": {
                    "type": "string",
                    "format": "date-time"
                  }
                }
              },
              "Execution": {
                "type": "object",
                "required": [
                  "id",
                  "agentId",
                  "conversationId",
                  "status",
                  "createdAt",
                  "updatedAt"
                ],
                "properties": {
                  "id": {
                    "type": "string"
                  },
                  "agentId": {
                    "type": "string"
                  },
                  "conversationId": {
                    "type": "string"
                  },
                  "status": {
                    "enum": [
                      "running",
                      "suspended",
                      "completed",
                      "failed",
                      "cancelled"
                    ]
                  },
                  "createdAt": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "updatedAt": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "lastEventId": {
                    "type": [
                      "string",
                      "null"
                    ]
                  },
                  "pendingApprovals": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/PendingApproval"
                    },
                    "description": "Present while suspended."
                  },
                  "error": {
                    "type": "object",
                    "properties": {
                      "code": {
                        "type": "string"
                      },
                      "message": {
                        "type": "string"
                      }
                    },
                    "description": "Present when failed or cancelled."
                  }
                }
              }
            }
          }
        }
        """#
}
