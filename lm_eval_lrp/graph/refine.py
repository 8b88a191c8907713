def refine(*a, **k): raise NotImplementedError
