from aa_uda.dann import DANN


class OtherDANN(DANN):
    """Another DANN under the same name."""
