from oauth2_provider.oauth2_validators import OAuth2Validator


class Validator(OAuth2Validator):
    """The address of the account in the ID token and at userinfo, as Google and Microsoft
    give it (``email``)."""

    oidc_claim_scope = {**OAuth2Validator.oidc_claim_scope, "email": "email"}

    def get_additional_claims(self, request):
        return {"email": request.user.email, "email_verified": True}
