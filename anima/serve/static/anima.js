// Shows the chosen file's name and marks the form busy while the server checks it. Nothing else.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload");
  if (!form) return;
  const input = document.getElementById("file");
  const label = document.getElementById("file-label");
  input.addEventListener("change", () => {
    label.textContent = input.files.length ? input.files[0].name : "Choose a file or drop it here";
  });
  form.addEventListener("submit", () => {
    const button = document.getElementById("submit");
    button.disabled = true;
    button.textContent = "Checking…";
  });
});
