//! `echo`: returns its input unchanged. The smallest possible step: the
//! engine's own cost per attempt is measured with it (`sandstep bench`).

wit_bindgen::generate!({ path: "../../../wit/step.wit", world: "step" });

struct Echo;

impl Guest for Echo {
    fn run(_ctx: Context, input: String) -> Result<String, StepError> {
        Ok(input)
    }
}

export!(Echo);
