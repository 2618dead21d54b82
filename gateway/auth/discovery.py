"""SMART configuration (/.well-known/smart-configuration), OpenID configuration, and the CapabilityStatement
security section with the legacy oauth-uris extension. Lists only what the gateway really does."""

from __future__ import annotations

from typing import Any

CAPABILITIES = [
    "launch-ehr", "launch-standalone", "authorize-post",
    "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
    "sso-openid-connect", "context-banner",
    "context-ehr-patient", "context-ehr-encounter", "context-standalone-patient",
    "permission-offline", "permission-online", "permission-patient", "permission-user", "permission-v1",
    "permission-v2",
]
SCOPES = ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
          "patient/*.cruds", "user/*.cruds", "system/*.cruds", "patient/*.read", "user/*.read", "system/*.read",
          "patient/*.rs", "user/*.rs", "system/*.rs"]


def smart_configuration(authority: Any) -> dict[str, Any]:
    e = authority.endpoints()
    return {
        "issuer": authority.fhir_base,
        "jwks_uri": e["jwks"],
        "authorization_endpoint": e["authorize"],
        "token_endpoint": e["token"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "capabilities": CAPABILITIES,
        "code_challenge_methods_supported": ["S256"],
        "introspection_endpoint": e["introspect"],
        "revocation_endpoint": e["revoke"],
        # no management_endpoint and no registration endpoint: the gateway has neither a page where a user
        # sees and revokes the apps it authorized nor dynamic client registration (RFC 7591), so it does not
        # advertise them; clients are registered with the admin API or `fhir-gateway clients add`
    }


def openid_configuration(authority: Any) -> dict[str, Any]:
    e = authority.endpoints()
    return {
        "issuer": authority.fhir_base, "jwks_uri": e["jwks"], "authorization_endpoint": e["authorize"],
        "token_endpoint": e["token"], "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"], "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
    }


def capability_security(authority: Any) -> dict[str, Any]:
    e = authority.endpoints()
    uris = [("authorize", e["authorize"]), ("token", e["token"]), ("introspect", e["introspect"]),
            ("revoke", e["revoke"])]
    return {
        "cors": True,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}], "text": "OAuth2 using SMART-on-FHIR profile"}],
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                       "extension": [{"url": k, "valueUri": v} for k, v in uris]}],
        "description": "SMART App Launch 2.2 and Backend Services; discovery at .well-known/smart-configuration",
    }
